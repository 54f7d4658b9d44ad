from transformers import CLIPTokenizer

from sdprobe.organism.tokenizer import MAX_LENGTH, save_tokenizer
from sdprobe.world import vocabulary


def test_every_grammar_word_is_one_token_and_other_text_still_tokenizes(tmp_path):
    save_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    ids = {w: tok(w).input_ids[1:-1] for w in vocabulary()}
    assert all(len(v) == 1 for v in ids.values())
    assert len({v[0] for v in ids.values()}) == len(ids)  # distinct words, distinct tokens
    assert "left</w>" in tok.convert_ids_to_tokens(tok("left").input_ids)
    odd = tok("<script>alert(1)</script>").input_ids
    assert tok.unk_token_id not in odd[1:-1] and len(odd) > 3
    assert tok.model_max_length == MAX_LENGTH
