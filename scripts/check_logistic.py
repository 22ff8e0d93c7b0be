#!/usr/bin/env python3
"""Fits scikit-learn's LogisticRegression (L2, intercept unpenalised) on the features and labels a test wrote,
to the tightest tolerance, and prints its coefficients as JSON, for tests/probing.rs to compare with
evals::logistic.

  check_logistic.py X.npy Y.npy C balanced|none
"""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

x, y = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]) > 0.5
clf = LogisticRegression(C=float(sys.argv[3]), class_weight="balanced" if sys.argv[4] == "balanced" else None,
                         solver="newton-cholesky", tol=1e-12, max_iter=1000)
clf.fit(x, y)
print(json.dumps({"w": clf.coef_[0].tolist(), "b": float(clf.intercept_[0]), "accuracy": clf.score(x, y),
                  "sklearn": __import__("sklearn").__version__}))
