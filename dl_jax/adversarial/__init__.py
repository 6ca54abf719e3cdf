"""Adversarial robustness: attacks, adversarial training losses, a learned adversary, evaluation.

attacks.py            FGSM, PGD (L-inf / L2, random start, restarts): per example, vmapped, jittable
training.py           loss_fns for PGD training, fast FGSM training and clean + adversarial mixes
learned_adversary.py  a generator of bounded perturbations trained against the classifier
evaluation.py         accuracy under attack with restarts (robust only if every start fails),
                      and the suite of evaluation attacks (noise, FGSM, PGD-k)
"""

from dl_jax.adversarial.attacks import (cross_entropy_loss, fgsm, input_gradients, pgd,
                                        pgd_restarts, uniform_noise)
from dl_jax.adversarial.evaluation import accuracy_under_attack, attack_suite
from dl_jax.adversarial.learned_adversary import PerturbationGenerator, defended_train_step
from dl_jax.adversarial.training import (adversarial_loss, fgsm_attack, pgd_attack,
                                         with_eps_ramp)

__all__ = [
    "PerturbationGenerator", "accuracy_under_attack", "adversarial_loss", "attack_suite",
    "cross_entropy_loss", "defended_train_step", "fgsm", "fgsm_attack", "input_gradients", "pgd",
    "pgd_attack", "pgd_restarts", "uniform_noise", "with_eps_ramp",
]
