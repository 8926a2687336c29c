"""The CIFAR-10 front end: three convolution blocks and dense layers to 1024 features."""

import math

import keras
import tensorflow as tf

from haviv_tf.models import cells


@keras.saving.register_keras_serializable(package="haviv_tf")
class ScaledConv2D(keras.layers.Layer):
  """3x3 'same' convolution whose weights are trainable variables times fixed factors.

  The authors' parametrisation (TriggerCIFARCloud.py L238-265): kernel = v / kernel_div with
  v ~ truncated_normal(std 1) trainable, bias = b / bias_div with b = 0.1 trainable. Under
  Adam a variable moves about lr per step, so the effective weights move kernel_div (bias_div)
  times more slowly than plain variables would.
  """

  def __init__(self, filters, kernel_div, bias_div, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.kernel_div, self.bias_div = int(filters), float(kernel_div), float(bias_div)

  def build(self, input_shape):
    self.kernel = self.add_weight(name="kernel", shape=(3, 3, int(input_shape[-1]), self.filters),
                                  initializer=keras.initializers.TruncatedNormal(stddev=1.0))
    self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                initializer=keras.initializers.Constant(0.1))

  def call(self, x):
    y = tf.nn.conv2d(x, self.kernel / self.kernel_div, strides=1, padding="SAME")
    return y + self.bias / self.bias_div

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    return dict(filters=self.filters, kernel_div=self.kernel_div, bias_div=self.bias_div,
                **super().get_config())


@keras.saving.register_keras_serializable(package="haviv_tf")
class ConvEncoder(keras.layers.Layer):
  """CIFAR-10 front end: 3 x [3x3 conv 128, leaky ReLU, 2x2 max pool] -> dense layers -> 1024.

  kind "authors" (TriggerCIFARCloud.py L238-291): the convolutions are ScaledConv2D with
  kernel divisors sqrt(3 x 128), 128, 128 and bias divisor sqrt(128); three dense layers
  2048 -> 2048 -> 2048 -> 1024, weights randn / sqrt(2048), biases 0.01 randn; leaky ReLU
  (slope 0.2) after every layer. kind "keras": Keras' default Conv2D and Dense layers, dense
  2048 -> 2048 -> 1024.
  """

  def __init__(self, frame_shape, kind="keras", **kwargs):
    super().__init__(**kwargs)
    self.frame_shape = tuple(int(v) for v in frame_shape)
    self.kind = kind
    self.blocks = []
    for k in range(3):
      if kind == "authors":
        div = math.sqrt(3 * 128) if k == 0 else 128.0
        conv = ScaledConv2D(128, div, math.sqrt(128), name=f"conv{k}")
      else:
        conv = keras.layers.Conv2D(128, 3, padding="same", name=f"conv{k}")
      self.blocks += [conv, keras.layers.LeakyReLU(negative_slope=0.2),
                      keras.layers.MaxPooling2D(2)]
      # An attribute of its own as well: checkpoints track layers held in attributes, not in
      # lists, so without it a model-only checkpoint (a history snapshot) would miss the
      # convolutions. The variables and their order stay those of `blocks`.
      setattr(self, f"conv{k}", conv)
    self.flatten = keras.layers.Flatten()
    if kind == "authors":
      init = dict(kernel_initializer=cells.normal_initializer(1.0 / math.sqrt(2048)),
                  bias_initializer=cells.normal_initializer(0.01))
      self.dense1 = keras.layers.Dense(2048, name="dense1", **init)
      self.dense2 = keras.layers.Dense(2048, name="dense2", **init)
      self.dense3 = keras.layers.Dense(1024, name="dense3", **init)
    else:
      self.dense1 = keras.layers.Dense(2048, name="dense1")
      self.dense2 = keras.layers.Dense(1024, name="dense2")
    self.act = keras.layers.LeakyReLU(negative_slope=0.2)
    self.output_size = 1024

  @property
  def dense_layers(self):
    """The dense layers in order (a property, not an attribute: the checkpoint keeps one path
    to each layer, dense1 ...)."""
    return [self.dense1, self.dense2] + ([self.dense3] if self.kind == "authors" else [])

  def build(self, input_shape):
    """Creates every sub-layer's weights now (not at the first call), so that optimizers and
    checkpoints built before any call see them."""
    del input_shape  # frames are [n, prod(frame_shape)]; the layers see frame_shape
    shape = (None,) + self.frame_shape
    for layer in self.blocks + [self.flatten]:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    for layer in self.dense_layers:
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    self.act.build(shape)

  def call(self, frames, low_precision=False):
    """frames [n, prod(frame_shape)] -> features [n, 1024] float32.

    With `low_precision` the convolutions and dense layers compute in bfloat16 (weights kept
    in float32 and cast), the same operations as the Keras layers.
    """
    x = tf.reshape(frames, (-1,) + self.frame_shape)
    if not low_precision:
      for layer in self.blocks:
        x = layer(x)
      x = self.flatten(x)
      for layer in self.dense_layers:
        x = self.act(layer(x))
      return x
    bf16 = lambda v: tf.cast(v, tf.bfloat16)  # pylint: disable=unnecessary-lambda-assignment
    slope = self.act.negative_slope
    x = bf16(x)
    for conv in self.blocks[::3]:
      kernel, bias = conv.kernel, conv.bias
      if isinstance(conv, ScaledConv2D):  # the effective weights, as ScaledConv2D.call
        kernel, bias = kernel / conv.kernel_div, bias / conv.bias_div
      x = tf.nn.conv2d(x, bf16(kernel), strides=1, padding="SAME") + bf16(bias)
      x = tf.nn.max_pool2d(tf.nn.leaky_relu(x, slope), 2, 2, "VALID")
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    for layer in self.dense_layers:
      x = tf.nn.leaky_relu(tf.matmul(x, bf16(layer.kernel)) + bf16(layer.bias), slope)
    return tf.cast(x, tf.float32)

  def get_config(self):
    return dict(frame_shape=list(self.frame_shape), kind=self.kind, **super().get_config())
