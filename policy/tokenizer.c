#include "tokenizer.h"

int vlad_tok_prompt(const char *text, size_t len, int max_prompt, int *out) {
    if (!text)
        len = 0;
    if (max_prompt < 0)
        max_prompt = 0;
    if (len > (size_t)max_prompt)
        len = (size_t)max_prompt;
    out[0] = VLAD_TOK_BOS;
    for (size_t i = 0; i < len; i++)
        out[1 + i] = (unsigned char)text[i];
    return (int)len + 1;
}

int vlad_tok_question(const char *text, size_t len, int max_q, int *out) {
    if (!text)
        len = 0;
    if (max_q < 0)
        max_q = 0;
    if (len > (size_t)max_q)
        len = (size_t)max_q;
    out[0] = VLAD_TOK_SEP;
    for (size_t i = 0; i < len; i++)
        out[1 + i] = (unsigned char)text[i];
    out[len + 1] = VLAD_TOK_SEP;
    return (int)len + 2;
}

size_t vlad_tok_decode(const int *toks, int n, char *out, size_t cap) {
    size_t k = 0;
    for (int i = 0; i < n && vlad_tok_is_byte(toks[i]); i++, k++)
        if (k < cap)
            out[k] = (char)toks[i];
    return k;
}

const char *vlad_tok_special_name(int tok) {
    switch (tok) {
    case VLAD_TOK_BOS: return "<bos>";
    case VLAD_TOK_EOS: return "<eos>";
    case VLAD_TOK_SEP: return "<sep>";
    case VLAD_TOK_PAD: return "<pad>";
    default: return NULL;
    }
}
