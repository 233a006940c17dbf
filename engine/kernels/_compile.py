"""How every kernel is compiled: once, cached on disk beside its module, releasing the GIL.

No fastmath: reassociating or fusing the arithmetic would change scores in
their last bits, and with them tie-breaks and recall.
"""

COMPILE = {"cache": True, "nogil": True}
