/*
 * The card watcher: a thread that follows the PC/SC readers through
 * pcsc-lite (SCardGetStatusChange) and tells the backend token when its card
 * is pulled (gw_token_lost, at once) or a card is inserted (binding check and
 * one login through gw_token_reconnect). Used when the backend is OpenSC.
 */
#ifndef GW_CARDWATCH_H
#define GW_CARDWATCH_H

#include <stddef.h>

#include "token.h"

struct gw_cardwatch;

/* Starts watching. reader: the PC/SC reader name (or a prefix of it) to
 * watch; NULL or "" = every reader, the token's own one found through its
 * slot description. pcscd need not run yet: the watcher waits for it.
 * Returns 0, or -1 with err. */
int gw_cardwatch_start(struct gw_token *tok, const char *reader,
                       struct gw_cardwatch **out, char *err, size_t errlen);

/* Wakes the thread (SCardCancel), waits for it and frees. NULL-safe. */
void gw_cardwatch_stop(struct gw_cardwatch **cw);

#endif
