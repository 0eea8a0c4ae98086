"""The data of statsmodels' test_lme.py::test_singular, as singular.csv."""
import numpy as np
import pandas as pd

rs = np.random.RandomState(3423)
n = 100
data = rs.randn(n, 2)
df = pd.DataFrame(data, columns=["Y", "X"])
df["cls"] = [i % 3 for i in df.index]
df.to_csv("singular.csv", index=False)
