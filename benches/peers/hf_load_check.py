"""Does HF transformers load a checkpoint cloze wrote, and compute what cloze
computes from it?  For `cloze prune` output (issue 17): loads MODEL_DIR with
BertModel.from_pretrained, reports missing/unexpected/mismatched keys and the
share of zeros in each encoder linear weight, then mean-pools the last hidden
state of each line of TEXT (no truncation beyond 128 tokens) and compares it
with the `embedding` of the same line in CLOZE_JSONL (`cloze encode --output
X.jsonl`): the largest absolute difference and the least cosine.

Usage: python hf_load_check.py MODEL_DIR TEXT CLOZE_JSONL
Prints one JSON line; exits 1 if a key is missing or unexpected.
"""
import json
import sys
import warnings

import torch
from transformers import BertModel, BertTokenizerFast

warnings.filterwarnings("ignore")
model_dir, text_path, cloze_path = sys.argv[1:4]
model, info = BertModel.from_pretrained(model_dir, output_loading_info=True)
model.eval()
zeros = {}
for name, p in model.named_parameters():
    if name.startswith("encoder.") and name.endswith("weight") and p.dim() == 2:
        zeros[name] = float((p == 0).float().mean())
lines = [l.strip() for l in open(text_path, encoding="utf-8") if l.strip()]
tokenizer = BertTokenizerFast.from_pretrained(model_dir)
with torch.inference_mode():
    batch = tokenizer(lines, padding=True, truncation=True, max_length=128, return_tensors="pt")
    states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    hf = (states * mask).sum(1) / mask.sum(1)
ours = torch.tensor([json.loads(l)["embedding"] for l in open(cloze_path)])
cos = torch.nn.functional.cosine_similarity(hf.double(), ours.double(), dim=1)
report = {
    "what": "hf_load_check",
    "model": model_dir,
    "missing_keys": sorted(info["missing_keys"]),
    "unexpected_keys": sorted(info["unexpected_keys"]),
    "mismatched_keys": [list(map(str, m)) for m in info.get("mismatched_keys", [])],
    "linear_weights": len(zeros),
    "zero_share_min": min(zeros.values()) if zeros else None,
    "zero_share_max": max(zeros.values()) if zeros else None,
    "sentences": len(lines),
    "max_abs_diff_vs_cloze": float((hf - ours).abs().max()),
    "min_cosine_vs_cloze": float(cos.min()),
}
print(json.dumps(report))
sys.exit(1 if info["missing_keys"] or info["unexpected_keys"] else 0)
