"""ExORL's DeepMind Control tasks (walker, cheetah, quadruped, jaco)."""
