"""isoFLOP sweeps: budget ladders and size rules (`ladders`), run planning (`plan`), running and
recording runs (`runner`), launchers (`launch`), the command line (`isoflop`), the CPU demo (`demo`),
and the Optuna tuner (`tune`, `optuna_study`)."""
