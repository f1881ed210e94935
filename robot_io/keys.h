/* keys.h — CURVE key files and who may do what.
 *
 * Certificates are ZeroMQ's text format (the one czmq's zcert writes):
 *     metadata
 *         name = "operator-laptop"
 *         rights = "observe,command"
 *     curve
 *         public-key = "<40 Z85 chars>"
 *         secret-key = "<40 Z85 chars>"        (secret certificates only)
 * A secret certificate must be a regular file that neither group nor others can read or
 * write (mode 0600 or stricter): one that can is refused, naming the file and its mode.
 * Rights (a client's public certificate in the daemon's key folder says which it has):
 *   observe  subscribe to actions/chunks/events/language, ask for status
 *   publish  publish observations (the robot, the simulator)
 *   command  set_instruction, reset, release_estop, ask
 *   infer    vlad-serve (serve/server.h): connect to its inference socket (ZAP domain "inf",
 *            zap.h) and ask it for action chunks and answers; the daemon's own sockets ignore it
 * Any authenticated client may e-stop and ask for status. "all" is every right. */
#ifndef VLAD_KEYS_H
#define VLAD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define VLAD_Z85_KEY 40
#define VLAD_MAX_CLIENT_KEYS 256

enum { VLAD_RIGHT_OBSERVE = 1, VLAD_RIGHT_PUBLISH = 2, VLAD_RIGHT_COMMAND = 4,
       VLAD_RIGHT_INFER = 8, VLAD_RIGHTS_ALL = 15 };

typedef struct vlad_cert {
    char name[64];
    unsigned rights;
    char public_key[VLAD_Z85_KEY + 1];
    char secret_key[VLAD_Z85_KEY + 1]; /* "" in a public certificate */
} vlad_cert;

/* Read a certificate; `secret` requires (and checks the permissions of) a secret key. */
int vlad_cert_read(const char *path, bool secret, vlad_cert *out, vlad_err *err);

/* Generate a keypair and write BASE.key (public, 0644) and BASE.key_secret (0600, never
 * overwritten: VLAD_ESTATE if it exists). rights as in vlad_rights_parse. */
int vlad_cert_generate(const char *base, const char *name, unsigned rights, vlad_err *err);

/* "observe,publish,command,infer" (any subset, comma- or space-separated) / "all" / "" (none:
 * e-stop and status only) -> bits. */
int vlad_rights_parse(const char *text, unsigned *rights, vlad_err *err);
/* bits -> "observe,publish,command,infer" (those set, in that order) into buf */
void vlad_rights_format(unsigned rights, char *buf, size_t cap);

/* The daemon's allowed clients: every `*.key` (public certificate) in a folder. */
typedef struct vlad_keyring {
    int n;
    vlad_cert keys[VLAD_MAX_CLIENT_KEYS];
} vlad_keyring;

int vlad_keyring_load(const char *dir, vlad_keyring *kr, vlad_err *err);

/* The entry whose public key is the 32 raw bytes `key`, or NULL. */
const vlad_cert *vlad_keyring_find(const vlad_keyring *kr, const uint8_t key[32]);
/* ... or whose Z85 public key is `z85`. */
const vlad_cert *vlad_keyring_find_z85(const vlad_keyring *kr, const char *z85);

#endif
