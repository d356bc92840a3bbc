"""RETURNN's side of the bridge: reading RETURNN config files as data (`config`), converting them
to netcompiler configs (`convert`, `netcompiler import-returnn`), and loading RETURNN (TF backend)
checkpoints (`checkpoint`, `checkpoint_import`)."""
