package service

import (
	"errors"
	"strings"
	"testing"
)

// The directives issue 9 asks of the unit. systemd-analyze verify checks
// the rendered unit in the package test (packaging/deb/test.sh).
func TestUnitHardening(t *testing.T) {
	unit, err := Unit(UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "/etc/encoder-bridge/encoder-bridge.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(unit), "\n") {
		lines[l] = true
	}
	for _, want := range []string{
		"ExecStart=/usr/bin/encoder-bridge run --config /etc/encoder-bridge/encoder-bridge.yaml",
		"ConditionPathExists=/etc/encoder-bridge/encoder-bridge.yaml",
		"User=encoder-bridge",
		"After=pcscd.socket network-online.target",
		"Wants=pcscd.socket network-online.target",
		"Restart=on-failure",
		"StartLimitIntervalSec=10min",
		"StartLimitBurst=5",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"StateDirectory=encoder-bridge",
		"LogsDirectory=encoder-bridge",
		"ConfigurationDirectory=encoder-bridge",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"PrivateDevices=yes",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
		"SystemCallFilter=@system-service",
		"CapabilityBoundingSet=",
		"WantedBy=multi-user.target",
	} {
		if !lines[want] {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "{{") {
		t.Errorf("unrendered template action in\n%s", unit)
	}
}

func TestUnitValues(t *testing.T) {
	for _, tt := range []struct {
		name       string
		o          UnitOptions
		exec, cond string
		err        bool
	}{
		{name: "plain", o: UnitOptions{Executable: "/usr/local/bin/encoder-bridge", Config: "/etc/encoder-bridge/site.yaml"},
			exec: "ExecStart=/usr/local/bin/encoder-bridge run --config /etc/encoder-bridge/site.yaml",
			cond: "ConditionPathExists=/etc/encoder-bridge/site.yaml"},
		{name: "space", o: UnitOptions{Executable: "/opt/encoder bridge/encoder-bridge", Config: "/etc/encoder-bridge/front desk.yaml"},
			exec: `ExecStart="/opt/encoder bridge/encoder-bridge" run --config "/etc/encoder-bridge/front desk.yaml"`,
			cond: "ConditionPathExists=/etc/encoder-bridge/front desk.yaml"},
		{name: "specifier and variable", o: UnitOptions{Executable: "/opt/a%n/$HOME/encoder-bridge", Config: "/etc/encoder-bridge/100%.yaml"},
			exec: `ExecStart="/opt/a%%n/$$HOME/encoder-bridge" run --config /etc/encoder-bridge/100%%.yaml`,
			cond: "ConditionPathExists=/etc/encoder-bridge/100%%.yaml"},
		{name: "quote", o: UnitOptions{Executable: `/opt/x"y/encoder-bridge`, Config: "/etc/encoder-bridge/a.yaml"},
			exec: `ExecStart="/opt/x\"y/encoder-bridge" run --config /etc/encoder-bridge/a.yaml`,
			cond: "ConditionPathExists=/etc/encoder-bridge/a.yaml"},
		{name: "relative config", o: UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "bridge.yaml"}, err: true},
		{name: "relative executable", o: UnitOptions{Executable: "encoder-bridge", Config: "/etc/a.yaml"}, err: true},
		{name: "line break", o: UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "/etc/a.yaml\nUser=root"}, err: true},
		{name: "bad user", o: UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "/etc/a.yaml", User: "root\nX=1"}, err: true},
		{name: "other user", o: UnitOptions{Executable: "/usr/bin/encoder-bridge", Config: "/etc/a.yaml", User: "frontdesk"},
			exec: "ExecStart=/usr/bin/encoder-bridge run --config /etc/a.yaml", cond: "User=frontdesk"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			unit, err := Unit(tt.o)
			if tt.err {
				if !errors.Is(err, ErrUnitValue) {
					t.Fatalf("Unit = %v, want ErrUnitValue", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{tt.exec, tt.cond} {
				if !strings.Contains(string(unit), "\n"+want+"\n") {
					t.Errorf("unit lacks %q:\n%s", want, unit)
				}
			}
		})
	}
}
