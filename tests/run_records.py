"""Hand-made run records, as the study report collects them, for the claim and report tests."""


def rec(name, accs, trials, compare=None):
  """A run record: report accuracy `accs` {delay: acc} over `trials` trials per delay, and with
  `compare` {mode: {delay: acc}} the fine-tunings' comparison rows."""
  return dict(name=name, dataset="mnist", protocol="decu", arch="gru",
              results=dict(accuracy_by_delay={str(d): a for d, a in accs.items()},
                           trials_per_delay={str(d): trials for d in accs}),
              compare=compare and dict(rows={m: dict(accuracy_by_delay={
                  str(d): a for d, a in by_d.items()}) for m, by_d in compare.items()}))
