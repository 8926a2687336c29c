"""What the claims read: the test delay of a data set, the delays where every network is at chance."""

from haviv_tf.study import evidence as evd

def test_claims_c_and_d_are_tested_at_their_data_sets_delay():
  mnist, cifar = dict(dataset="mnist"), dict(dataset="cifar10")
  assert evd.test_delay([mnist, mnist], [50, 500, 2000]) == 500
  assert evd.test_delay([cifar], [50, 100, 500, 1000]) == 100
  assert evd.test_delay([mnist, cifar], [100, 500, 1000]) == 500  # a mix: MNIST's
  assert evd.test_delay([cifar], [50, 200]) == 200  # not evaluated there: the longest

def test_delays_where_every_network_is_at_chance_are_named():
  def rec(accs, trials=1000):
    return dict(results=dict(accuracy_by_delay={str(d): a for d, a in accs.items()},
                             trials_per_delay={str(d): trials for d in accs}))
  recs = [rec({100: 0.5, 500: 0.1, 1000: 0.115}), rec({100: 0.1, 500: 0.118, 1000: 0.13})]
  # two standard errors of 0.1 with 1000 trials: 0.119
  assert evd.chance_delays(recs, [100, 500, 1000]) == [500]
  assert evd.chance_delays([rec({500: 0.13}, trials=100)], [500]) == [500]  # 0.16 with 100
  assert evd.chance_delays(recs + [dict(results=None)], [500]) == []  # one not evaluated
