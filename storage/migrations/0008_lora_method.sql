-- How each model version was trained (engine.jobs.TRAINING_METHODS): "lora",
-- "textual_inversion" or "pivotal"; the versions trained before this column were LoRAs.

ALTER TABLE loras ADD COLUMN method TEXT NOT NULL DEFAULT 'lora';
