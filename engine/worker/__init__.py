"""The Faust worker: app, agents, live API, runtime and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.settings import Settings
    from engine.worker.app import EngineApp


def build_app(settings: Settings) -> EngineApp:
    """The worker's Faust app for ``settings``, with its agent, timers and live API registered."""
    from engine.worker.agents import register_agents
    from engine.worker.api import register_api
    from engine.worker.app import EngineApp

    app = EngineApp(settings)
    register_agents(app)
    register_api(app)
    return app
