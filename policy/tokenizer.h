/* tokenizer.h — the byte tokenizer of MODEL.md: bytes 0-255 are tokens 0-255, plus
 * BOS=256, EOS=257, SEP=258, PAD=259 (vocab 260). */
#ifndef VLAD_POLICY_TOKENIZER_H
#define VLAD_POLICY_TOKENIZER_H

#include <stddef.h>

#include "config.h"

/* Prompt tokens of the prefix: BOS then the first max_prompt bytes. out needs max_prompt + 1
 * entries. Returns the token count (1 + bytes used). */
int vlad_tok_prompt(const char *text, size_t len, int max_prompt, int *out);

/* A language stream's opening tokens: SEP, the first max_q bytes, SEP. out needs max_q + 2
 * entries. Returns the token count. */
int vlad_tok_question(const char *text, size_t len, int max_q, int *out);

/* 1 if tok is a byte token (0..255). */
static inline int vlad_tok_is_byte(int tok) { return tok >= 0 && tok < 256; }

/* Decode: bytes of the byte tokens of toks[0..n) up to the first non-byte token, at most cap
 * bytes written. Returns the number of bytes (which may exceed cap: then truncated). */
size_t vlad_tok_decode(const int *toks, int n, char *out, size_t cap);

/* Static name of a special token ("<bos>", ...) or NULL for bytes / out of range. */
const char *vlad_tok_special_name(int tok);

#endif
