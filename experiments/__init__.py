"""Research scripts: each has a config, `run(config, workdir) -> results`, and an absl `main`."""
