package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/bridge/agent"
	"github.com/encoder-bridge/encoder-bridge/bridge/config"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// fail prints err as one line on stderr (and as JSON with --json) and
// reports it as already shown.
func (a *app) fail(cmd string, asJSON bool, op bridge.Op, err error) error {
	je := bridge.Classify(op, err)
	fmt.Fprintf(a.stderr, "encoder-bridge %s: %s: %v\n", cmd, je.Code, je.Err)
	if asJSON {
		a.printJSON(map[string]any{"error": map[string]string{"type": string(je.Code), "message": je.Err.Error()}})
	}
	return errReported
}

func (a *app) printJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *app) cmdReaders(ctx context.Context, args []string) error {
	var c common
	fs := newFlags("readers", a.stderr)
	c.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return a.fail("readers", c.json, bridge.OpScan, err)
	}
	rc, err := a.openReaders(zap.NewNop())
	if err != nil {
		return a.fail("readers", c.json, bridge.OpScan, err)
	}
	defer rc.Close()
	names, err := rc.Readers(ctx)
	if err != nil {
		return a.fail("readers", c.json, bridge.OpScan, err)
	}
	attached := agent.Attach(ctx, rc, names)
	offered := map[string]string{}
	for _, e := range agent.Offered(cfg.Cloud.BridgeID, cfg.Encoders, cfg.ExcludeReaders, nil, attached) {
		offered[e.ReaderName] = e.DisplayName
	}
	type row struct {
		Name        string `json:"name"`
		Serial      string `json:"serial,omitempty"`
		DisplayName string `json:"display_name,omitempty"`
		Offered     bool   `json:"offered"`
	}
	rows := make([]row, 0, len(attached))
	for _, r := range attached {
		display, ok := offered[r.Name]
		rows = append(rows, row{Name: r.Name, Serial: r.Serial, DisplayName: display, Offered: ok})
	}
	if c.json {
		a.printJSON(map[string]any{"readers": rows})
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintln(a.stdout, "no card reader attached")
		return nil
	}
	for _, r := range rows {
		line := r.Name
		if r.Serial != "" {
			line += "\tserial " + r.Serial
		}
		switch {
		case !r.Offered:
			line += "\t(not offered: see encoders and exclude_readers)"
		case r.DisplayName != r.Name:
			line += "\t(" + r.DisplayName + ")"
		}
		fmt.Fprintln(a.stdout, line)
	}
	return nil
}

// prepare loads configuration and keys, opens the readers and resolves the
// reader the user meant. close releases the readers.
func (a *app) prepare(ctx context.Context, c *common, readerName string) (st *bridge.Station, name string, cfg *config.Config, closeFn func(), err error) {
	if cfg, err = c.loadConfig(); err != nil {
		return nil, "", nil, nil, err
	}
	ks, err := c.loadKeys(cfg)
	if err != nil {
		return nil, "", nil, nil, err
	}
	rc, err := a.openReaders(zap.NewNop())
	if err != nil {
		return nil, "", nil, nil, err
	}
	if name, err = bridge.ResolveReader(ctx, rc, readerName); err != nil {
		rc.Close()
		return nil, "", nil, nil, err
	}
	return &bridge.Station{Readers: rc, Keys: ks}, name, cfg, func() { rc.Close() }, nil
}

func (a *app) cmdEncode(ctx context.Context, args []string) error {
	var c common
	var wait waitFlag
	var readerName, credPath string
	fs := newFlags("encode", a.stderr)
	c.register(fs)
	fs.StringVar(&readerName, "reader", "", "reader `name` (or a unique part of it); optional with one reader")
	fs.StringVar(&credPath, "credential", "", "credential `file` (JSON: credential_id, card_number, card_function_type, starts_at, ends_at, entrance_ids, issue_sequence)")
	fs.Var(&wait, "wait", "how long to wait for a card (`duration`); 0: the card must be on the reader")
	if err := parse(fs, args); err != nil {
		return err
	}
	if credPath == "" {
		return fmt.Errorf("%w: --credential FILE is required", errUsage)
	}
	data, err := os.ReadFile(credPath)
	if err != nil {
		return a.fail("encode", c.json, bridge.OpEncode, &bridge.JobError{Code: protocol.ErrorInvalidCredential, Err: err})
	}
	cred, err := bridge.ParseCredential(data)
	if err != nil {
		return a.fail("encode", c.json, bridge.OpEncode, fmt.Errorf("%s: %w", credPath, err))
	}
	st, name, cfg, closeFn, err := a.prepare(ctx, &c, readerName)
	if err != nil {
		return a.fail("encode", c.json, bridge.OpEncode, err)
	}
	defer closeFn()
	card, err := st.Encode(ctx, name, cred, wait.value(cfg))
	if err != nil {
		return a.fail("encode", c.json, bridge.OpEncode, err)
	}
	out := encodeOutput{
		Reader:         card.Reader,
		UID:            strings.ToUpper(hex.EncodeToString(card.UID)),
		Technology:     string(card.Technology),
		KeyVersion:     st.Keys.Current().Version,
		CredentialSpec: bridge.SpecOf(cred),
	}
	if c.json {
		a.printJSON(out)
		return nil
	}
	fmt.Fprintf(a.stdout, "encoded card %s (%s) on %q: card number %s, %s, valid %s to %s, key version %d\n",
		out.UID, out.Technology, out.Reader, cred.CardNumber, cred.Function,
		out.StartsAt, out.EndsAt, out.KeyVersion)
	return nil
}

type encodeOutput struct {
	Reader     string `json:"reader"`
	UID        string `json:"uid"`
	Technology string `json:"technology"`
	KeyVersion uint8  `json:"key_version"`
	bridge.CredentialSpec
}

type scanOutput struct {
	Reader     string   `json:"reader"`
	UID        string   `json:"uid"`
	Technology string   `json:"technology"`
	Valid      bool     `json:"valid"`
	Reason     string   `json:"reason,omitempty"`
	Detail     string   `json:"detail,omitempty"`
	Warnings   []string `json:"warnings"`
	*scanRecord
}

type scanRecord struct {
	FormatVersion uint8 `json:"format_version"`
	KeyVersion    uint8 `json:"key_version"`
	bridge.CredentialSpec
}

func (a *app) cmdScan(ctx context.Context, args []string) error {
	var c common
	var wait waitFlag
	var readerName string
	fs := newFlags("scan", a.stderr)
	c.register(fs)
	fs.StringVar(&readerName, "reader", "", "reader `name` (or a unique part of it); optional with one reader")
	fs.Var(&wait, "wait", "how long to wait for a card (`duration`); 0: the card must be on the reader")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, name, cfg, closeFn, err := a.prepare(ctx, &c, readerName)
	if err != nil {
		return a.fail("scan", c.json, bridge.OpScan, err)
	}
	defer closeFn()
	res, err := st.Scan(ctx, name, wait.value(cfg))
	if err != nil {
		return a.fail("scan", c.json, bridge.OpScan, err)
	}
	out := scanOutput{
		Reader:     res.Reader,
		UID:        strings.ToUpper(hex.EncodeToString(res.UID)),
		Technology: string(res.Technology),
		Valid:      res.Valid(),
		Reason:     string(res.Reason),
		Detail:     res.Detail,
		Warnings:   res.Warnings,
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	if res.Record != nil {
		out.scanRecord = &scanRecord{
			FormatVersion:  res.Record.FormatVersion,
			KeyVersion:     res.Record.KeyVersion,
			CredentialSpec: bridge.SpecOf(res.Record.Credential),
		}
	}
	if c.json {
		a.printJSON(out)
		return nil
	}
	fmt.Fprintf(a.stdout, "card %s (%s) on %q\n", out.UID, out.Technology, out.Reader)
	if !out.Valid {
		fmt.Fprintf(a.stdout, "valid: no (%s: %s)\n", out.Reason, out.Detail)
		return nil
	}
	r := out.scanRecord
	fmt.Fprintf(a.stdout, "valid: yes\ncredential_id: %s\ncard_number: %s\ncard_function_type: %s\nstarts_at: %s\nends_at: %s\nentrance_ids: %s\nissue_sequence: %d\nkey_version: %d\n",
		r.CredentialID, r.CardNumber, r.CardFunctionType, r.StartsAt, r.EndsAt,
		strings.Join(r.EntranceIDs, ", "), *r.IssueSequence, r.KeyVersion)
	if len(out.Warnings) > 0 {
		fmt.Fprintf(a.stdout, "warnings: %s\n", strings.Join(out.Warnings, ", "))
	}
	return nil
}
