"""The experiment kit: long-form records of every figure (`records`) and verdicts on claims by
stated statistical tests (`verdicts`)."""
