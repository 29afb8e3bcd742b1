"""The optimizer of the original (TF1 Adam, its slot names) and the learning-rate schedules."""
from typing import Dict, List, Tuple

import keras
import tensorflow as tf

from network_configure import LR_SCHEDULES


def learning_rate(step, config: Dict) -> tf.Tensor:
    """The learning rate of global step `step` under `config` (a model's opt_config).

    'staircase' (the original, and the default when config has no 'lr_schedule'): TF1's
    exponential_decay, base * rate^(step / decay_steps), floored when 'lr_staircase'.
    'cosine' and 'linear': from base at step 0 to 0 at step 'lr_decay_steps' (the last step
    of the run), Keras' CosineDecay and PolynomialDecay(power=1).
    """
    schedule = config.get('lr_schedule', 'staircase')
    base, decay_steps = float(config['base_learning_rate']), float(config['lr_decay_steps'])
    if schedule == 'staircase':
        exponent = tf.cast(step, tf.float32) / decay_steps
        if config['lr_staircase']:
            exponent = tf.floor(exponent)
        return base * tf.pow(float(config['lr_decay_rate']), exponent)
    if schedule == 'cosine':
        decay = keras.optimizers.schedules.CosineDecay(base, decay_steps, alpha=0.0)
    elif schedule == 'linear':
        decay = keras.optimizers.schedules.PolynomialDecay(base, decay_steps, 0.0, power=1.0)
    else:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    return tf.cast(decay(tf.cast(step, tf.float32)), tf.float32)


class TF1Adam(tf.Module):
    """tf.compat.v1.train.AdamOptimizer, with its variables named as in a TF1 checkpoint.

    Slots '<var>/Adam' (first moment) and '<var>/Adam_1' (second moment); 'beta1_power' and
    'beta2_power' start at beta1 and beta2 and are multiplied by them after each step, so the
    update is var -= lr * sqrt(1 - beta2_power) / (1 - beta1_power) * m / (sqrt(v) + epsilon)
    with TF1's epsilon 1e-8.
    """

    def __init__(self, named_variables: List[Tuple[str, tf.Variable]], beta1: float = 0.9,
                 beta2: float = 0.999, epsilon: float = 1e-8):
        super().__init__(name='adam')
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.names = [name for name, _ in named_variables]
        self.variables_ = [v for _, v in named_variables]
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
        # slots are found by the variable itself, never by position in a list enumerated
        # elsewhere (where two same-shaped variables could trade slots silently)
        self._slot_index = {id(v): i for i, v in enumerate(self.variables_)}
        self.beta1_power = tf.Variable(beta1, trainable=False)
        self.beta2_power = tf.Variable(beta2, trainable=False)

    def named_state(self) -> Dict[str, tf.Variable]:
        """{TF1 name: variable} of the slots and the beta powers."""
        state = {'beta1_power': self.beta1_power, 'beta2_power': self.beta2_power}
        for name, m, v in zip(self.names, self.m, self.v):
            state[f'{name}/Adam'] = m
            state[f'{name}/Adam_1'] = v
        return state

    def slots(self, variable) -> Tuple[tf.Variable, tf.Variable]:
        """(first, second moment) of `variable`, one of the variables the optimizer was made for."""
        index = self._slot_index.get(id(variable))
        if index is None or self.variables_[index] is not variable:
            raise ValueError(f"TF1Adam has no slots for variable {variable.name}: it was built "
                             f"for another network")
        return self.m[index], self.v[index]

    def apply(self, gradients, variables, lr) -> None:
        """One Adam step: variables[i] -= ... gradients[i], in any order of the variables."""
        lr_t = lr * tf.sqrt(1.0 - self.beta2_power) / (1.0 - self.beta1_power)
        for g, var in zip(gradients, variables):
            m, v = self.slots(var)
            m.assign_add((g - m) * (1.0 - self.beta1))
            v.assign_add((tf.square(g) - v) * (1.0 - self.beta2))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + self.epsilon))
        self.beta1_power.assign(self.beta1_power * self.beta1)
        self.beta2_power.assign(self.beta2_power * self.beta2)
