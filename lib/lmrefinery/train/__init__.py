"""Ray Train pretraining and instruction tuning of Llama-architecture decoders.

``lmrefinery train RECIPE`` (cli.py) -> trainer.run_training -> TorchTrainer running
loop.train_loop on each worker; data through lmrefinery.tokenize.reader; exports in
export.py; SFT scoring in evaluate.py. See docs/train.md."""
