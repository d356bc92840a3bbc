"""Running networks: training (`trainer`, its `options`, `losses`, `lr_control`, `gradients`),
checkpoints, decoding (`search`), datasets and their input pipeline (`datasets/`)."""
