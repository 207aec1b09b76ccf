"""Peer for `cloze bench encode --precision int8`: HF BertModel in fp32 and
after PyTorch's own dynamic int8 quantisation of its nn.Linear layers
(torch.ao.quantization.quantize_dynamic, qint8 weights), timed in one process
on the same sentences as ../shared/peers/hf_encode_bench.py selects them
(split after . ! ? and white space, at least 5 words, first N, batch 32,
file order, at most 128 tokens, mean pooling).

Prints JSON lines: hf_encode_tokens_per_s (fp32), hf_encode_int8_tokens_per_s,
and the min and mean cosine of the int8 sentence embeddings to fp32's.
Usage: python hf_encode_int8.py MODEL_DIR TEXT.txt [N] [REPS]
"""
import json
import re
import sys
import time
import warnings

import torch
from transformers import BertModel, BertTokenizerFast

warnings.filterwarnings("ignore")
torch.set_num_threads(2)
model_dir, path = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
text = open(path, encoding="utf-8").read()
pieces = (p.strip() for p in re.split(r"(?<=[.!?])\s+", text))
sentences = [p for p in pieces if len(p.split()) >= 5][:n]
tokenizer = BertTokenizerFast.from_pretrained(model_dir)
fp32 = BertModel.from_pretrained(model_dir).eval()
int8 = torch.ao.quantization.quantize_dynamic(
    BertModel.from_pretrained(model_dir).eval(), {torch.nn.Linear}, dtype=torch.qint8
)


def encode(model):
    """Mean-pooled embeddings of every sentence, and the real token count."""
    out, real = [], 0
    with torch.inference_mode():
        for start in range(0, len(sentences), 32):
            batch = tokenizer(sentences[start:start + 32], padding=True, truncation=True,
                              max_length=128, return_tensors="pt")
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append((states * mask).sum(1) / mask.sum(1))
            real += int(batch["attention_mask"].sum())
    return torch.cat(out), real


best = {"fp32": float("inf"), "int8": float("inf")}
result = {}
for _ in range(reps):
    for name, model in (("fp32", fp32), ("int8", int8)):
        t = time.perf_counter()
        result[name] = encode(model)
        best[name] = min(best[name], time.perf_counter() - t)
(e32, real), (e8, _) = result["fp32"], result["int8"]
cos = torch.nn.functional.cosine_similarity(e32.double(), e8.double(), dim=1)
print(json.dumps({"what": "hf_encode_tokens_per_s", "value": round(real / best["fp32"], 1),
                  "sentences": len(sentences), "tokens": real, "order": "file"}))
print(json.dumps({"what": "hf_encode_int8_tokens_per_s", "value": round(real / best["int8"], 1),
                  "sentences": len(sentences), "tokens": real, "order": "file",
                  "quantisation": "torch.ao.quantization.quantize_dynamic, qint8, per tensor"}))
print(json.dumps({"what": "hf_cosine_int8_vs_fp32", "value": float(cos.min()),
                  "min": float(cos.min()), "mean": float(cos.mean())}))
