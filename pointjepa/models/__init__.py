"""LightningModules, one per task, on the shared ``base.BackboneModule``."""
