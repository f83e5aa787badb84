"""frugalmerge: evolutionary model merging with cheap fitness.

Importing the package does no work: heavy dependencies (torch, transformers, pymoo) are imported
by the stage modules that need them (``merging``, ``evaluation``, ``subsets``, ``estimators``,
``search``, ``zoo``).
"""

__version__ = "0.1.0"
