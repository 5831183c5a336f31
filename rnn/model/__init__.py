"""The model: the recurrent stack, eager or fused (`layers`), the character-level LM (`charlm`), and
the checks that the engines agree (`checks`)."""
