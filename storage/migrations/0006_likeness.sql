-- How much each model version looks like its user (engine.training.likeness): a JSON
-- object {"distance": 0.41 or null, "faces": 3, "samples": 4, "step": 300}, or NULL for
-- a version trained without the measurement.

ALTER TABLE loras ADD COLUMN likeness TEXT;
