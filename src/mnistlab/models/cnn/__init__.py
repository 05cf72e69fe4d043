"""CNNs in PyTorch: the nets (net), batched augmentation (augment), their hyperparameters (hyper),
the training loop of one net (loop), members trained side by side (parallel), the scikit-learn
estimator over them (estimator), and ONNX export (onnx). Importing this package imports no torch."""
