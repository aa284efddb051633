"""The engine: everything that touches images and models: photo intake, training,
generation, safety filters, provenance marks, the job contract (engine.jobs) and the
engine process with its job loop. It never imports a chat platform's library."""
