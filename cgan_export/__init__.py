"""cgan-export: exportable conditional GAN generators for i-CLEVR."""

__version__ = "0.1.0"
