/*
 * embed: files built into the binary, the one way tandem does it.
 *
 *   EMBED(sym, "path/from/the/repository/root");
 *
 * at file scope pulls the file's bytes into .rodata with the assembler's
 * .incbin and declares sym[] (the first byte) and sym_end[] (one past the
 * last). A NUL byte follows sym_end, so a text file is also a C string.
 * The path is relative to the directory make runs in (the repository root).
 *
 * The compiler's -MMD cannot see an .incbin, so the Makefile's compile rule
 * adds one line per EMBED to the object's .d file: write each EMBED on one
 * line, starting the line, with a literal path, and an edit of the file
 * rebuilds the object that embeds it.
 */
#ifndef TANDEM_EMBED_H
#define TANDEM_EMBED_H

#include <stddef.h>

#define EMBED(sym, file)                                                                           \
    __asm__(".pushsection .rodata\n"                                                               \
            ".balign 16\n"                                                                         \
            ".globl " #sym "\n"                                                                    \
            ".hidden " #sym "\n" #sym ":\n"                                                        \
            ".incbin \"" file "\"\n"                                                               \
            ".globl " #sym "_end\n"                                                                \
            ".hidden " #sym "_end\n" #sym "_end:\n"                                                \
            ".byte 0\n"                                                                            \
            ".popsection\n");                                                                      \
    extern const unsigned char sym[], sym##_end[]

/* The size in bytes of an embedded file (not counting the NUL after it). */
#define EMBED_LEN(sym) ((size_t)(sym##_end - sym))

#endif
