/*
 * fuzz_ipc - the IPC attribute list decoder (common/ipc.c): ipc_parse
 * (event-driven receivers: qmgr, anvil) and ipc_get (everyone else),
 * which must agree, and the typed accessors on what they return.
 *
 * Input: one byte choosing the piece size in which the stream hands out
 * the bytes, then a sequence of lists.  Properties: both decoders accept
 * the same leading lists with the same contents; every accepted name is
 * a valid name and every value is NUL-free and within its limit; after
 * an error nothing is left in the message.
 */
#include "config.h"

#include "fuzz.h"
#include "ipc.h"

#define LISTS_MAX 64

static void
check_msg(const struct ipc_msg *m, const struct ipc_limits *lim)
{
	size_t i, vlen;
	const char *v;
	long long n;

	FUZZ_ASSERT(ipc_msg_count(m) <= lim->attrs_max);
	for (i = 0; i < ipc_msg_count(m); i++) {
		FUZZ_ASSERT(ipc_name_valid(ipc_msg_name(m, i)));
		v = ipc_msg_value(m, i, &vlen);
		FUZZ_ASSERT(v != NULL && strlen(v) == vlen && vlen <= lim->value_max);
		FUZZ_ASSERT(ipc_msg_str(m, ipc_msg_name(m, i)) != NULL);
		FUZZ_ASSERT(ipc_msg_count_name(m, ipc_msg_name(m, i)) >= 1);
		if (ipc_msg_int(m, ipc_msg_name(m, i), -1000, 1000, &n) == 0)
			FUZZ_ASSERT(n >= -1000 && n <= 1000);
	}
}

static bool
same(const struct ipc_msg *a, const struct ipc_msg *b)
{
	size_t i, la, lb;
	const char *va, *vb;

	if (ipc_msg_count(a) != ipc_msg_count(b))
		return false;
	for (i = 0; i < ipc_msg_count(a); i++) {
		va = ipc_msg_value(a, i, &la);
		vb = ipc_msg_value(b, i, &lb);
		if (strcmp(ipc_msg_name(a, i), ipc_msg_name(b, i)) != 0 || la != lb || memcmp(va, vb, la) != 0)
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ipc_limits small = { 16, 256, 8 };
	struct ipc_msg pm[LISTS_MAX], gm;
	struct fuzz_mem mem;
	struct stream *s;
	struct buf err = BUF_INIT;
	static const char *const req[] = { "status", NULL };
	size_t used, off = 0, np = 0, ng = 0, i;
	const struct ipc_limits *lim;
	int r;

	fuzz_quiet();
	if (size < 1)
		return 0;
	lim = (data[0] & 0x80) ? &small : NULL;
	mem.piece = 1 + (data[0] & 0x7f);
	data++;
	size--;

	/* From memory: list after list until the input runs out or an error. */
	for (np = 0; np < LISTS_MAX; np++) {
		ipc_msg_init(&pm[np]);
		r = ipc_parse(data + off, size - off, &pm[np], lim, &used);
		if (r != 1) {
			FUZZ_ASSERT(r == 0 || r == IPC_ERR_SYNTAX || r == IPC_ERR_TOOBIG);
			FUZZ_ASSERT(ipc_msg_count(&pm[np]) == 0);
			ipc_msg_free(&pm[np]);
			break;
		}
		FUZZ_ASSERT(used > 0 && used <= size - off);
		check_msg(&pm[np],
		    lim ? lim
		        : &(struct ipc_limits){ IPC_VALUE_MAX_DEFAULT, IPC_LIST_MAX_DEFAULT, IPC_ATTRS_MAX_DEFAULT });
		(void)ipc_msg_check(&pm[np], req, NULL, IPC_STRICT, &err);
		off += used;
	}

	/* From a stream handing out the same bytes in pieces: the same lists. */
	mem.p = data;
	mem.len = size;
	mem.pos = 0;
	s = fuzz_stream(&mem);
	ipc_msg_init(&gm);
	for (ng = 0; ng < LISTS_MAX; ng++) {
		r = ipc_get(s, &gm, lim);
		if (r != STREAM_OK) {
			FUZZ_ASSERT(ipc_msg_count(&gm) == 0);
			FUZZ_ASSERT(ipc_strerror(r) != NULL);
			break;
		}
		FUZZ_ASSERT(ng < np);
		FUZZ_ASSERT(same(&gm, &pm[ng]));
	}
	FUZZ_ASSERT(ng == np);
	ipc_msg_free(&gm);
	stream_free(s);
	for (i = 0; i < np; i++)
		ipc_msg_free(&pm[i]);
	buf_free(&err);
	return 0;
}
