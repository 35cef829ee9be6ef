"""Training techniques: each family's math as plain functions, with a thin :class:`~zoo.contract.ZooTechnique`
callback on top that plugs it into the one training step of the zoo contract.

Importing this package registers every technique in :data:`zoo.registry.CALLBACKS` (``fgm``, ``pgd``,
``freelb``, ``smart``, ``adversarial_evaluation``, ``rdrop``, ``mixup``, ``cutmix``, ``l2sp``, ``ema``,
``distillation``).
"""

from zoo.contract import TechniqueNotApplicableError, ZooTechnique
from zoo.techniques.adversarial import FGM, PGD, SMART, AdversarialTechnique, FreeLB
from zoo.techniques.adversarial_evaluation import AdversarialEvaluation
from zoo.techniques.checks import TechniqueConfigError
from zoo.techniques.distillation import Distillation, TeacherMismatchError
from zoo.techniques.ema import EMA
from zoo.techniques.l2sp import L2SP
from zoo.techniques.mixing import CutMix, MixingTechnique, Mixup
from zoo.techniques.rdrop import RDrop

__all__ = ["EMA", "FGM", "L2SP", "PGD", "SMART", "AdversarialEvaluation", "AdversarialTechnique", "CutMix",
           "Distillation", "FreeLB", "MixingTechnique", "Mixup", "RDrop", "TeacherMismatchError",
           "TechniqueConfigError", "TechniqueNotApplicableError", "ZooTechnique"]
