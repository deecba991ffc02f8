/*
 * bbparse parses BitBake files (.bb, .bbappend, .inc, .conf) with the
 * tree-sitter-bitbake grammar and prints what the layer lint needs, one JSON
 * object a line:
 *
 *   {"file":F,"line":N,"kind":"assign","name":"SRC_URI:append","op":"+=","value":"\"...\"","export":false}
 *   {"file":F,"line":N,"kind":"inherit","value":"go-mod systemd"}
 *   {"file":F,"line":N,"kind":"require","value":"kvscamd-go-mods.inc"}
 *   {"file":F,"line":N,"kind":"function","name":"do_install:append","value":"<shell body>"}
 *   {"file":F,"line":N,"kind":"python","name":"do_foo"}
 *
 * Syntax errors (ERROR or MISSING nodes) go to stderr as FILE:LINE:COL and
 * make the exit status 1; nothing is printed on stdout for such a file.
 * Exit status 2 means a file could not be read.
 *
 * Build: cc -O2 -I$GRAMMAR/src bbparse.c $GRAMMAR/src/parser.c
 *        $GRAMMAR/src/scanner.c -ltree-sitter
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tree_sitter/api.h>

const TSLanguage *tree_sitter_bitbake(void);

/* readall returns the whole file, NUL-terminated, or NULL. */
static char *readall(const char *path, long *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0, r;
	char *buf = malloc(cap + 1);
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
	}
	fclose(f);
	if (!buf)
		return NULL;
	buf[n] = 0;
	*len = (long)n;
	return buf;
}

/* jstr prints src[start:end) as a JSON string, trimmed of blanks. */
static void jstr(const char *src, uint32_t start, uint32_t end)
{
	while (start < end && (src[start] == ' ' || src[start] == '\t' || src[start] == '\n'))
		start++;
	while (end > start && (src[end - 1] == ' ' || src[end - 1] == '\t' || src[end - 1] == '\n'))
		end--;
	putchar('"');
	for (uint32_t i = start; i < end; i++) {
		unsigned char c = (unsigned char)src[i];
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		default:
			if (c < 0x20)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

static int report_errors(const char *path, TSNode n)
{
	int bad = 0;
	if (strcmp(ts_node_type(n), "ERROR") == 0 || ts_node_is_missing(n)) {
		TSPoint p = ts_node_start_point(n);
		fprintf(stderr, "%s:%u:%u: syntax error%s\n", path, p.row + 1, p.column + 1,
			ts_node_is_missing(n) ? " (missing token)" : "");
		return 1;
	}
	if (!ts_node_has_error(n))
		return 0;
	uint32_t c = ts_node_child_count(n);
	for (uint32_t i = 0; i < c; i++)
		bad |= report_errors(path, ts_node_child(n, i));
	return bad;
}

static void head(const char *path, TSNode n, const char *kind)
{
	printf("{\"file\":");
	jstr(path, 0, (uint32_t)strlen(path));
	printf(",\"line\":%u,\"kind\":\"%s\"", ts_node_start_point(n).row + 1, kind);
}

/* assignment prints a variable_assignment; name is the text before the
 * operator, value the text after it. */
static void assignment(const char *path, const char *src, TSNode n, int exported)
{
	TSNode op = ts_node_child_by_field_name(n, "operator", 8);
	if (ts_node_is_null(op))
		return;
	head(path, n, "assign");
	printf(",\"name\":");
	jstr(src, ts_node_start_byte(n), ts_node_start_byte(op));
	printf(",\"op\":");
	jstr(src, ts_node_start_byte(op), ts_node_end_byte(op));
	printf(",\"value\":");
	jstr(src, ts_node_end_byte(op), ts_node_end_byte(n));
	printf(",\"export\":%s}\n", exported ? "true" : "false");
}

/* function prints a shell task: its name with overrides and its body. */
static void function(const char *path, const char *src, TSNode n)
{
	uint32_t c = ts_node_child_count(n), name_start = 0, name_end = 0, body_start = 0, body_end = 0;
	int have_name = 0;
	for (uint32_t i = 0; i < c; i++) {
		TSNode k = ts_node_child(n, i);
		const char *t = ts_node_type(k);
		if (!have_name && strcmp(t, "identifier") == 0) {
			name_start = ts_node_start_byte(k);
			name_end = ts_node_end_byte(k);
			have_name = 1;
		} else if (have_name && strcmp(t, "override") == 0 && body_start == 0) {
			name_end = ts_node_end_byte(k);
		} else if (strcmp(t, "{") == 0) {
			body_start = ts_node_end_byte(k);
		} else if (strcmp(t, "}") == 0) {
			body_end = ts_node_start_byte(k);
		}
	}
	head(path, n, "function");
	printf(",\"name\":");
	jstr(src, name_start, name_end);
	printf(",\"value\":");
	jstr(src, body_start, body_end > body_start ? body_end : body_start);
	printf("}\n");
}

/* after prints the text of n that follows its first child (the keyword). */
static void after(const char *path, const char *src, TSNode n, const char *kind)
{
	head(path, n, kind);
	printf(",\"value\":");
	TSNode first = ts_node_child(n, 0);
	jstr(src, ts_node_end_byte(first), ts_node_end_byte(n));
	printf("}\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bbparse FILE...\n");
		return 2;
	}
	int status = 0;
	TSParser *p = ts_parser_new();
	ts_parser_set_language(p, tree_sitter_bitbake());
	for (int a = 1; a < argc; a++) {
		long len = 0;
		char *src = readall(argv[a], &len);
		if (!src) {
			perror(argv[a]);
			status = 2;
			continue;
		}
		TSTree *tree = ts_parser_parse_string(p, NULL, src, (uint32_t)len);
		TSNode root = ts_tree_root_node(tree);
		if (report_errors(argv[a], root)) {
			if (status == 0)
				status = 1;
		} else {
			uint32_t c = ts_node_named_child_count(root);
			for (uint32_t i = 0; i < c; i++) {
				TSNode n = ts_node_named_child(root, i);
				const char *t = ts_node_type(n);
				if (strcmp(t, "variable_assignment") == 0) {
					assignment(argv[a], src, n, 0);
				} else if (strcmp(t, "export_statement") == 0) {
					uint32_t k = ts_node_named_child_count(n);
					for (uint32_t j = 0; j < k; j++) {
						TSNode v = ts_node_named_child(n, j);
						if (strcmp(ts_node_type(v), "variable_assignment") == 0)
							assignment(argv[a], src, v, 1);
					}
				} else if (strcmp(t, "inherit_directive") == 0) {
					after(argv[a], src, n, "inherit");
				} else if (strcmp(t, "require_directive") == 0) {
					after(argv[a], src, n, "require");
				} else if (strcmp(t, "include_directive") == 0) {
					after(argv[a], src, n, "include");
				} else if (strcmp(t, "function_definition") == 0) {
					function(argv[a], src, n);
				} else if (strcmp(t, "python_function_definition") == 0 ||
					   strcmp(t, "anonymous_python_function") == 0) {
					head(argv[a], n, "python");
					TSNode name = ts_node_child_by_field_name(n, "name", 4);
					for (uint32_t j = 0; ts_node_is_null(name) && j < ts_node_child_count(n); j++)
						if (strcmp(ts_node_type(ts_node_child(n, j)), "identifier") == 0)
							name = ts_node_child(n, j);
					printf(",\"name\":");
					if (ts_node_is_null(name))
						printf("\"\"");
					else
						jstr(src, ts_node_start_byte(name), ts_node_end_byte(name));
					printf("}\n");
				}
			}
		}
		ts_tree_delete(tree);
		free(src);
	}
	ts_parser_delete(p);
	return status;
}
