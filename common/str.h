/*
 * str - small string helpers shared by the parsers: strict number parsing,
 * ASCII case folding, token splitting for "a, b c" lists, trimming.
 */
#ifndef POSTERN_STR_H
#define POSTERN_STR_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse a decimal number in [min, max]; rejects empty strings, signs where
 * min >= 0, trailing junk and overflow.  Returns 0, or -1 with *why set to
 * a short reason ("invalid", "too small", "too large").
 */
int str_to_ll(const char *s, long long min, long long max, long long *out, const char **why);

/* Fold ASCII letters to lower case in place; returns s. */
char *str_lower(char *s);
/* ASCII-only case-insensitive comparison (locale independent). */
int str_casecmp(const char *a, const char *b);
int str_ncasecmp(const char *a, const char *b, size_t n);

/* Strip leading and trailing white space in place; returns the start. */
char *str_trim(char *s);

/*
 * Return the next token of *sp separated by any of the characters in sep,
 * skipping empty tokens; NULL at the end.  Modifies the string.  Used for
 * Postfix-style lists ("a, b c" with sep " \t\r\n,").
 */
char *str_token(char **sp, const char *sep);
#define STR_LIST_SEP " \t\r\n,"
/* As str_token, but separators inside {braces} (nested) do not split: "inline:{a=b, c=d}" is one token. */
char *str_token_braced(char **sp, const char *sep);

/* True when s ends with suffix. */
bool str_ends_with(const char *s, const char *suffix);

#endif
