"""The training layer common to every agent: state, steps, blocks, the actor's schedule and the key tree."""
