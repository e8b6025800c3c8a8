"""Quality metrics: ground-truth metrics on synthetic data (``groundtruth``)."""
