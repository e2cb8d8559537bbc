"""Fine-tune vision-language models as decision-making agents with PPO (Zhai et al. 2024).

`import vlmagent` registers the envs' gymnasium ids (vlmagent/NumberLine-v0, ...), as `import ale_py`
does: `gym.make("vlmagent/NumberLine-v0")` then works. About 0.1 s, mostly gymnasium and numpy; ALFWorld's
engine (textworld) still loads only when one of its envs is made.
"""

from vlmagent import envs as envs
