vlmagent init-model runs/learn/ezpoints-sft2500/base --size tiny --image-size 112 --patch-size 28
vlmagent demos --run runs/learn/ezpoints-sft2500 --episodes 512
vlmagent sft --run runs/learn/ezpoints-sft2500 --data runs/learn/ezpoints-sft2500/demos --policy runs/learn/ezpoints-sft2500/base --out runs/learn/ezpoints-sft2500/sft_read --facts-only --steps 1000
vlmagent sft --run runs/learn/ezpoints-sft2500 --data runs/learn/ezpoints-sft2500/demos --policy runs/learn/ezpoints-sft2500/sft_read --out runs/learn/ezpoints-sft2500/sft
vlmagent eval --run runs/learn/ezpoints-sft2500 --policy runs/learn/ezpoints-sft2500/sft --out runs/learn/ezpoints-sft2500/eval/000000
vlmagent loop --run runs/learn/ezpoints-sft2500 --iterations 16
vlmagent eval --run runs/learn/ezpoints-sft2500 --policy oracle --out runs/learn/ezpoints-sft2500/eval_oracle
vlmagent eval --run runs/learn/ezpoints-sft2500 --policy random --out runs/learn/ezpoints-sft2500/eval_random
vlmagent report runs/learn/ezpoints-sft2500
