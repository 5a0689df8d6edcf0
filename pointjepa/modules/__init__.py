"""Plain nn.Modules: tokenizer, transformer, predictor, sequencer, samplers, EMA, transforms, heads."""
