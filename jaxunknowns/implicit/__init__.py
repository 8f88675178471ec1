"""The implicit regularization of gradient descent: max margin, sharpness,
landscapes, Hessian spectra, the edge of stability and SAM, their reports
and the papers' numbers (papers.py)."""
