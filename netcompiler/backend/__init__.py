"""The TensorFlow back end: a validated network -> `CompiledNetwork` (`build`), what a layer's
builder sees (`runtime`), TF ops for activations, initialisers and `eval` expressions, decoder
loops and beam search (`loop/`), SavedModel export (`export`)."""
