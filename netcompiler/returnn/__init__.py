"""RETURNN's side of the bridge: reading RETURNN config files as data (`config`, with
`config_values`, `config_safe`, `config_eval`, and `config_exec` for `--exec`), converting them
to netcompiler configs (`convert`, `netcompiler import-returnn`, with `convert_state`,
`convert_network`, `convert_data`, `convert_train`, `convert_learning_rate`, `import_result`
and `yaml_out`), and loading RETURNN (TF backend) checkpoints (`checkpoint`,
`checkpoint_import`)."""
