"""Data sets bundled with statsmodels-hetmixed."""
