"""The models, one per file, behind one Protocol; the only package that imports FluRS."""
