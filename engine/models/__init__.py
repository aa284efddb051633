"""Base models: families and their recipes here; pipelines in `engine.models.loader`.

This package's top level stays free of torch and diffusers so that configuration code
can ask about families cheaply; import `engine.models.loader` or `engine.models.tiny`
where a pipeline is needed.
"""

from engine.models.families import FAMILIES, FAMILY_NAMES, Family, dtype_for, resolve_family
from engine.models.recipe import TrainingRecipe

__all__ = ["FAMILIES", "FAMILY_NAMES", "Family", "TrainingRecipe", "dtype_for", "resolve_family"]
