// Command goverify checks a Consentry checkpoint and its proofs with Go's golang.org/x/mod/sumdb
// packages (note and tlog), an implementation independent of Consentry's. It reads one JSON document
// on standard input and exits non-zero, printing why, if anything fails to verify.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	LogKey      string   `json:"log_key"`
	Checkpoint  string   `json:"checkpoint"`
	Entry       string   `json:"entry"`
	Index       int64    `json:"index"`
	Inclusion   []string `json:"inclusion"`
	OldSize     int64    `json:"old_size"`
	OldRoot     string   `json:"old_root"`
	Consistency []string `json:"consistency"`
}

func hashes(items []string) []tlog.Hash {
	out := make([]tlog.Hash, len(items))
	for i, item := range items {
		h, err := tlog.ParseHash(item)
		check(err)
		out[i] = h
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	var in input
	check(json.NewDecoder(os.Stdin).Decode(&in))
	verifier, err := note.NewVerifier(in.LogKey)
	check(err)
	n, err := note.Open([]byte(in.Checkpoint), note.VerifierList(verifier))
	check(err)
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		check(fmt.Errorf("not a checkpoint of %s", verifier.Name()))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	check(err)
	root, err := tlog.ParseHash(lines[2])
	check(err)
	entry, err := base64.StdEncoding.DecodeString(in.Entry)
	check(err)
	check(tlog.CheckRecord(hashes(in.Inclusion), size, root, in.Index, tlog.RecordHash(entry)))
	oldRoot, err := tlog.ParseHash(in.OldRoot)
	check(err)
	check(tlog.CheckTree(hashes(in.Consistency), size, root, in.OldSize, oldRoot))
	fmt.Printf("ok %d\n", size)
}
