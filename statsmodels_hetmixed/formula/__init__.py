"""Formula interface, in the style of ``statsmodels.formula``."""
