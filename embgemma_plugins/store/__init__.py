"""The model store and what it holds: variant folders, their manifests, the variant registry,
and the resolution of ``model=``/``variant=`` to files (local folders, the store, the hub).

Submodules are imported where needed: ``store.hub`` loads huggingface_hub (and requests),
which a variant already in the store never needs.
"""
