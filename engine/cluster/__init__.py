"""The engine on a Ray cluster: each lane is an actor that runs the engine process on its
own machine, and a job's files travel as bytes (engine.cluster.transfer).

`engine.cluster.lane` is the bot's side, `engine.cluster.actor` the worker's. Only a
deployment with `[cluster] address` imports them, and with them Ray.
"""
