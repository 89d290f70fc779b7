"""discolib: Disco-Diffusion-style CLIP-guided and latent diffusion images and animations."""

__version__ = "0.1.0"
