#!/bin/sh
# manpage_check.sh - check man/main.cf.5 against the parameter table.
#
# Run by "make check" with POSTERN (the built cli/postern) and top_srcdir
# (the source tree) in the environment.  The table comes from the program
# itself, "postern conf -D", one line per declared parameter:
#
#   name TAB type TAB default TAB doc TAB kind
#
# where kind says where the default comes from: "literal" (the text in
# common/cfg_param.def), "build" (a path or identity that configure
# chooses, so it differs between builds) or "computed" (worked out at run
# time, like myhostname; the table holds "").
#
# The PARAMETERS section of main.cf.5 must list every declared parameter
# exactly once, and no other, on a line of one of these forms:
#
#   .It Va NAME Pq default: Ql "VALUE"          literal, non-empty default
#   .It Va NAME Pq default: empty               literal empty default
#   .It Va NAME Pq default: set at build time   kind build
#   .It Va NAME Pq default: computed            kind computed
#
# VALUE must equal the table's default byte for byte once the mdoc escapes
# \&, \(dq and \e are undone.  Exit 0 with a one-line summary when the page
# and the table agree; exit 1 listing every difference otherwise.

set -u

: "${POSTERN:?set POSTERN to the built cli/postern}"
: "${top_srcdir:?set top_srcdir to the source directory}"
page=$top_srcdir/man/main.cf.5

tmp=$(mktemp -d "${TMPDIR:-/tmp}/manpage_check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

if ! "$POSTERN" conf -D >"$tmp/table"; then
	echo "manpage_check: \"$POSTERN conf -D\" failed"
	exit 1
fi
if ! test -s "$tmp/table"; then
	echo "manpage_check: \"$POSTERN conf -D\" printed no parameters"
	exit 1
fi
if ! test -r "$page"; then
	echo "manpage_check: cannot read $page"
	exit 1
fi

# The page's entries as: name TAB form TAB value, form being one of
# value, empty, build, computed or bad (with the unreadable text).
awk '
/^\.Sh / { insec = ($2 == "PARAMETERS"); next }
!insec || !/^\.It Va / { next }
{
	name = $3
	rest = $0
	sub(/^\.It Va [^ ]+ */, "", rest)
	if (rest !~ /^Pq default: /) { printf "%s\tbad\t%s\n", name, rest; next }
	sub(/^Pq default: /, "", rest)
	if (rest == "empty") { printf "%s\tempty\t\n", name; next }
	if (rest == "computed") { printf "%s\tcomputed\t\n", name; next }
	if (rest == "set at build time") { printf "%s\tbuild\t\n", name; next }
	if (rest ~ /^Ql ".*"$/) {
		v = substr(rest, 5, length(rest) - 5)
		gsub(/\\&/, "", v)
		gsub(/\\\(dq/, "\"", v)
		out = ""
		while ((i = index(v, "\\e")) > 0) {
			out = out substr(v, 1, i - 1) "\\"
			v = substr(v, i + 2)
		}
		printf "%s\tvalue\t%s\n", name, out v
		next
	}
	printf "%s\tbad\t%s\n", name, rest
}' "$page" >"$tmp/page" || exit 1

awk -F '\t' '
FNR == NR {
	declared[$1] = 1
	def[$1] = $3
	kind[$1] = $5
	ndeclared++
	next
}
{
	name = $1
	if (++seen[name] > 1) {
		printf "%s: documented more than once\n", name
		bad++
		next
	}
	if (!(name in declared)) {
		printf "%s: documented in main.cf.5 but no program declares it\n", name
		bad++
		next
	}
	if ($2 == "bad") {
		printf "%s: cannot read the default in \"%s\" (see the forms in %s)\n", name, $3, script
		bad++
		next
	}
	if (kind[name] == "build")
		want = "build"
	else if (kind[name] == "computed")
		want = "computed"
	else if (def[name] == "")
		want = "empty"
	else
		want = "value"
	if ($2 != want) {
		printf "%s: the page says the default is %s, the table says %s\n", name, \
		    ($2 == "value" ? "\"" $3 "\"" : $2), (want == "value" ? "\"" def[name] "\"" : want)
		bad++
	} else if (want == "value" && $3 != def[name]) {
		printf "%s: the page gives the default \"%s\", the table \"%s\"\n", name, $3, def[name]
		bad++
	}
}
END {
	for (name in declared) {
		if (!(name in seen)) {
			printf "%s: declared but not documented in main.cf.5\n", name
			bad++
		}
	}
	if (bad) {
		printf "manpage_check: FAIL: %d problem(s) between man/main.cf.5 and the parameter table\n", bad
		exit 1
	}
	printf "manpage_check: ok: main.cf.5 documents all %d parameters with their defaults\n", ndeclared
}' script="tests/unit/manpage_check.sh" "$tmp/table" "$tmp/page"
