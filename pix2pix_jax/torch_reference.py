"""The PyTorch reference's pix2pix networks, initialisation and train step (needs torch).

Written from junyanz/pytorch-CycleGAN-and-pix2pix with the same module nesting, so
state_dict keys are the reference's (what `torch_import` reads). Line numbers are those of
its commit 032e88438b1b2690e538c2cf399ebceb76adbea9, the version read (other commits,
master's included, number them differently):

  models/networks.py
    `get_norm_layer` (l. 12-21)         `norm_layer` (instance: no affine, no running stats).
    `get_scheduler` (l. 24-38)          the `lambda` policy's lambda_rule (l. 26-28) is the
                                        `linear` one of benchmarks/vs_reference.py.
    `init_weights` (l. 41-62)           `init_weights`: conv / linear weights by init_type
                                        (normal, xavier, kaiming, orthogonal) and init_gain,
                                        biases 0; BatchNorm2d weight ~ N(1, gain), bias 0.
    `GANLoss` (l. 109-172)              `gan_loss`: vanilla = BCEWithLogitsLoss, lsgan =
                                        MSELoss, against a label 1 / 0 broadcast to the logits.
    `ResnetGenerator` (l. 213-263)      `RefResnetGenerator`
    `ResnetBlock` (l. 266-307)          `RefResnetBlock` (padding_type='reflect')
    `UnetGenerator` (l. 314-331)        `RefUnetGenerator` (plus phillipi/pix2pix's Lua
                                        dropout placement, dropout_placement='lua')
    `UnetSkipConnectionBlock` (l. 337-387)  `RefUnetBlock`
    `NLayerDiscriminator` (l. 391-431)  `RefNLayerDiscriminator`
    `PixelDiscriminator` (l. 434-453)   `RefPixelDiscriminator`
  models/pix2pix_model.py
    `Pix2PixModel.__init__` (l. 22-52)  Adam(lr, betas=(beta1, 0.999)) for G and D (l. 49-50).
    `forward` (l. 60-61), `backward_D` (l. 63-78), `backward_G` (l. 80-91),
    `optimize_parameters` (l. 93-105)   `ReferencePix2Pix.optimize_parameters`.

torch is optional for the project: only the tests and tools that compare with the reference
import this module.
"""

from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import init


def norm_layer(norm: str, channels: int) -> nn.Module:
  """The reference's norm layers: instance norm without affine parameters or statistics."""
  if norm == "batch":
    return nn.BatchNorm2d(channels)
  if norm == "instance":
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
  return nn.Identity()


class RefUnetBlock(nn.Module):
  """A UnetSkipConnectionBlock: down, the levels below, up, and the skip concatenation."""

  def __init__(self, outer, inner, norm, input_channels=None, submodule=None,
               outermost=False, innermost=False, dropout=False):
    super().__init__()
    self.outermost = outermost
    bias = norm == "instance"
    down = nn.Conv2d(input_channels or outer, inner, 4, 2, 1, bias=bias)
    if outermost:
      layers = [down, submodule, nn.ReLU(True),
                nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
    elif innermost:  # dropout here only in the Lua placement (see RefUnetGenerator).
      layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias),
                norm_layer(norm, outer)] + ([nn.Dropout(0.5)] if dropout else [])
    else:
      layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), submodule,
                nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias),
                norm_layer(norm, outer)] + ([nn.Dropout(0.5)] if dropout else [])
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
  """UnetGenerator: innermost block, num_downs - 5 ngf*8 blocks with dropout, then 4 more.

  `dropout_placement` 'lua' moves the dropout to the innermost three decoder blocks
  (phillipi/pix2pix; our model.dropout_placement='lua'); 'pytorch' is the reference's.
  """

  def __init__(self, num_downs, ngf, norm, channels=3, dropout=True,
               dropout_placement="pytorch"):
    super().__init__()
    innermost = num_downs - 1  # depths as models.dropout_levels counts them: 0 = outermost.
    if dropout_placement == "pytorch":
      levels = range(4, innermost)
    elif dropout_placement == "lua":
      levels = range(max(innermost - 2, 1), innermost + 1)
    else:
      raise ValueError(f"dropout_placement={dropout_placement!r}: 'pytorch' or 'lua'.")
    block = RefUnetBlock(ngf * 8, ngf * 8, norm, innermost=True,
                         dropout=dropout and innermost in levels)
    for depth in range(innermost - 1, 3, -1):
      block = RefUnetBlock(ngf * 8, ngf * 8, norm, submodule=block,
                           dropout=dropout and depth in levels)
    for depth, (outer_mult, inner_mult) in zip((3, 2, 1), ((4, 8), (2, 4), (1, 2))):
      block = RefUnetBlock(ngf * outer_mult, ngf * inner_mult, norm, submodule=block,
                           dropout=dropout and depth in levels)
    self.model = RefUnetBlock(channels, ngf, norm, input_channels=channels, submodule=block,
                              outermost=True)

  def forward(self, x):
    return self.model(x)


class RefNLayerDiscriminator(nn.Module):
  """NLayerDiscriminator: `model` is one nn.Sequential of conv / norm / LeakyReLU."""

  def __init__(self, input_channels, ndf, n_layers, norm):
    super().__init__()
    bias = norm == "instance"
    layers = [nn.Conv2d(input_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    features = ndf
    for n in range(1, n_layers + 1):
      new_features = ndf * min(2 ** n, 8)
      stride = 2 if n < n_layers else 1
      layers += [nn.Conv2d(features, new_features, 4, stride, 1, bias=bias),
                 norm_layer(norm, new_features), nn.LeakyReLU(0.2, True)]
      features = new_features
    layers.append(nn.Conv2d(features, 1, 4, 1, 1))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


class RefPixelDiscriminator(nn.Module):
  """PixelDiscriminator: 1x1 convs in `net`."""

  def __init__(self, input_channels, ndf, norm):
    super().__init__()
    bias = norm == "instance"
    self.net = nn.Sequential(
        nn.Conv2d(input_channels, ndf, 1, 1, 0), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 1, 1, 0, bias=bias), norm_layer(norm, ndf * 2),
        nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 2, 1, 1, 1, 0, bias=bias))

  def forward(self, x):
    return self.net(x)


class RefResnetBlock(nn.Module):
  """ResnetBlock(padding_type='reflect'): x + conv_block(x)."""

  def __init__(self, dim, norm, dropout):
    super().__init__()
    bias = norm == "instance"
    layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim),
              nn.ReLU(True)] + ([nn.Dropout(0.5)] if dropout else [])
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
    self.conv_block = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
  """ResnetGenerator: c7s1-ngf, two stride-2 downs, n blocks, two transposed ups, c7s1-out."""

  def __init__(self, n_blocks, ngf, norm, channels=3, dropout=True):
    super().__init__()
    bias = norm == "instance"
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7, bias=bias),
              norm_layer(norm, ngf), nn.ReLU(True)]
    for mult in (1, 2):
      layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias),
                 norm_layer(norm, ngf * mult * 2), nn.ReLU(True)]
    layers += [RefResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
    for mult in (4, 2):
      layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1,
                                    bias=bias),
                 norm_layer(norm, ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02
                 ) -> nn.Module:
  """The reference's init_weights, in place (draws from torch's global generator).

  Conv / Linear weights: N(0, gain), xavier_normal_(gain), kaiming_normal_(a=0, fan_in) or
  orthogonal_(gain); their biases 0. BatchNorm2d: weight ~ N(1, gain), bias 0. As the
  reference, modules are matched by class name ('Conv' covers ConvTranspose2d).
  """
  def init_func(m):
    classname = m.__class__.__name__
    if hasattr(m, "weight") and ("Conv" in classname or "Linear" in classname):
      if init_type == "normal":
        init.normal_(m.weight.data, 0.0, init_gain)
      elif init_type == "xavier":
        init.xavier_normal_(m.weight.data, gain=init_gain)
      elif init_type == "kaiming":
        init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
      elif init_type == "orthogonal":
        init.orthogonal_(m.weight.data, gain=init_gain)
      else:
        raise NotImplementedError(f"initialization method [{init_type}] is not implemented")
      if getattr(m, "bias", None) is not None:
        init.constant_(m.bias.data, 0.0)
    elif "BatchNorm2d" in classname:
      init.normal_(m.weight.data, 1.0, init_gain)
      init.constant_(m.bias.data, 0.0)
  net.apply(init_func)
  return net


def randomise(module: nn.Module, seed: int) -> nn.Module:
  """Weights, biases and batch-norm statistics away from their initial values (in place).

  For forward-pass comparisons: unit-variance activations, and running statistics that
  differ from the batch's.
  """
  generator = torch.Generator().manual_seed(seed)

  def uniform(shape, low, high):
    return low + (high - low) * torch.rand(shape, generator=generator)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        # Unit output variance: a transposed stride-2 conv sums over (k/2)^2 taps per input.
        taps = (m.weight[0, 0].numel() / 4 if isinstance(m, nn.ConvTranspose2d)
                else m.weight[0, 0].numel())
        fan_in = m.weight.shape[0 if isinstance(m, nn.ConvTranspose2d) else 1] * taps
        m.weight.copy_(uniform(m.weight.shape, -1, 1) * (3 / fan_in) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(uniform(m.bias.shape, -0.2, 0.2))
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
        m.bias.copy_(uniform(m.bias.shape, -0.3, 0.3))
        m.running_mean.copy_(uniform(m.running_mean.shape, -0.3, 0.3))
        m.running_var.copy_(uniform(m.running_var.shape, 0.5, 2.0))
        m.num_batches_tracked.fill_(1234)
  return module


RESNET_BLOCKS = {"unet": 0, "resnet_6blocks": 6, "resnet_9blocks": 9}  # as models.resnet_blocks


def networks_from_config(model_config, seed: int
                         ) -> tuple[nn.Module, nn.Module]:
  """(generator, discriminator) of `model_config` (the `model` section), as the reference
  builds and initialises them after torch.manual_seed(seed). Needs only torch: the
  benchmarks' reference processes import nothing of JAX."""
  model = model_config
  torch.manual_seed(seed)
  init = lambda net: init_weights(net, model.init_type, model.init_gain)
  channels = model.input_channels
  n_blocks = RESNET_BLOCKS[model.generator]
  if n_blocks:
    generator = RefResnetGenerator(n_blocks, model.ngf, model.norm, channels,
                                   dropout=model.dropout)
  else:
    generator = RefUnetGenerator(model.num_downs, model.ngf, model.norm, channels,
                                 dropout=model.dropout,
                                 dropout_placement=model.dropout_placement)
  d_channels = model.input_channels + model.output_channels
  discriminator = (RefPixelDiscriminator(d_channels, model.ndf, model.norm)
                   if model.d_layers == 0 else
                   RefNLayerDiscriminator(d_channels, model.ndf, model.d_layers, model.norm))
  return init(generator), init(discriminator)


def gan_loss(prediction: torch.Tensor, target_is_real: bool, gan_mode: str) -> torch.Tensor:
  """GANLoss(gan_mode)(prediction, target_is_real) for 'vanilla' and 'lsgan'."""
  target = torch.tensor(1.0 if target_is_real else 0.0).expand_as(prediction)
  if gan_mode == "vanilla":
    return nn.functional.binary_cross_entropy_with_logits(prediction, target)
  if gan_mode == "lsgan":
    return nn.functional.mse_loss(prediction, target)
  raise NotImplementedError(f"gan mode {gan_mode} not implemented")


class ReferencePix2Pix:
  """Pix2PixModel's training half: two networks, their Adams, `optimize_parameters`.

  `gan_mode` is 'vanilla', 'lsgan' or 'none' (L1 only: no discriminator update, loss_G =
  lambda_l1 * L1; the reference has no such mode, it is the paper's L1-only ablation). The
  reference's image pool is off for pix2pix (pool_size 0), so none here.
  """

  def __init__(self, generator: nn.Module, discriminator: Optional[nn.Module], *,
               gan_mode: str = "vanilla", lambda_l1: float = 100.0, lr: float = 2e-4,
               beta1: float = 0.5):
    if gan_mode not in ("vanilla", "lsgan", "none"):
      raise ValueError(f"gan_mode={gan_mode!r}: 'vanilla', 'lsgan' or 'none'.")
    self.net_g, self.net_d = generator.train(), discriminator
    self.gan_mode, self.lambda_l1 = gan_mode, lambda_l1
    self.optimizer_g = torch.optim.Adam(self.net_g.parameters(), lr=lr, betas=(beta1, 0.999))
    self.optimizer_d = None
    if gan_mode != "none":
      self.net_d.train()
      self.optimizer_d = torch.optim.Adam(self.net_d.parameters(), lr=lr,
                                          betas=(beta1, 0.999))

  @staticmethod
  def set_requires_grad(net: nn.Module, requires_grad: bool) -> None:
    for param in net.parameters():
      param.requires_grad = requires_grad

  def optimize_parameters(self, real_a: torch.Tensor, real_b: torch.Tensor
                          ) -> dict[str, float]:
    """One step on an NCHW batch: G forward, D update, G update. Returns the losses
    (the reference's names; loss_G_L1 is weighted by lambda_l1, as there)."""
    losses = {}
    fake_b = self.net_g(real_a)  # forward()
    if self.gan_mode != "none":  # backward_D
      self.set_requires_grad(self.net_d, True)
      self.optimizer_d.zero_grad()
      pred_fake = self.net_d(torch.cat((real_a, fake_b), 1).detach())
      loss_d_fake = gan_loss(pred_fake, False, self.gan_mode)
      pred_real = self.net_d(torch.cat((real_a, real_b), 1))
      loss_d_real = gan_loss(pred_real, True, self.gan_mode)
      loss_d = (loss_d_fake + loss_d_real) * 0.5
      loss_d.backward()
      self.optimizer_d.step()
      losses.update(loss_D_fake=loss_d_fake.item(), loss_D_real=loss_d_real.item(),
                    loss_D=loss_d.item())
      self.set_requires_grad(self.net_d, False)
    self.optimizer_g.zero_grad()  # backward_G
    loss_g_l1 = nn.functional.l1_loss(fake_b, real_b) * self.lambda_l1
    loss_g = loss_g_l1
    if self.gan_mode != "none":
      pred_fake = self.net_d(torch.cat((real_a, fake_b), 1))
      loss_g_gan = gan_loss(pred_fake, True, self.gan_mode)
      loss_g = loss_g_gan + loss_g_l1
      losses["loss_G_GAN"] = loss_g_gan.item()
    loss_g.backward()
    self.optimizer_g.step()
    losses.update(loss_G_L1=loss_g_l1.item(), loss_G=loss_g.item())
    return losses


def state_dicts(model: ReferencePix2Pix) -> dict[str, dict[str, np.ndarray]]:
  """{'generator', 'discriminator'}: each network's state_dict as float32 numpy copies."""
  nets = {"generator": model.net_g, "discriminator": model.net_d}
  return {name: {k: v.detach().cpu().float().numpy().copy()
                 for k, v in net.state_dict().items()}
          for name, net in nets.items() if net is not None}
