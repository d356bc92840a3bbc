"""Decoder loops: `rec` layers whose `unit` is a sub-network, run step by step (TensorFlow).

`runner.run_rec` runs the unit of a rec layer; the modules, in the order a run uses them:
`unit_traits` (what the loop knows about unit layers; which rec layers can be searched) and
`plan` (where each unit layer runs) need no TensorFlow; `outer` (what the rec layer reads from
the enclosing network), `setup` (search or teacher forcing, batch and beam sizes, loop length;
`max_len` for `max_seq_len`), `initial` (initial outputs), `moved_out` (layers computed outside
the loop), `step_inputs` (what a step reads), `step_loop` (the `tf.while_loop`), `beam` (beam
search), `tensors` (shape helpers); `decode.search` is `net.search`."""
