package status

// Remedies, in the words the front desk or the person on the phone needs.
const (
	RemedyReaders = "Check that the smart-card service runs (pcscd on Linux, Smart Card on Windows) " +
		"and that the encoder's USB cable is in; 'encoder-bridge doctor' tells which."
	RemedyUnknown = "Run 'encoder-bridge doctor' and read the bridge's log around this time."
)

// jobRemedies maps a job's error code (protocol.ErrorType, or the Seam
// action_attempt_expired) to what to do about it.
var jobRemedies = map[string]string{
	"no_credential_on_encoder": "No card was on the encoder in time, or it left too early: " +
		"place the card flat on the encoder before starting the job and leave it until the job ends.",
	"incompatible_card_format": "This card is not one this system writes, or it belongs to another site: " +
		"use a card from the hotel's stock (MIFARE Classic, Ultralight EV1, NTAG213/215/216).",
	"encoding_interrupted": "The card left the encoder while it was written and may hold part of a record: " +
		"put it back and encode it again.",
	"encoder_communication_timeout": "The encoder stopped answering: unplug it, plug it back in and run the job again.",
	"encoder_not_online":            "The encoder is not reachable: check its USB cable and that the smart-card service runs.",
	"action_attempt_expired": "The job waited too long for its encoder or a card: start it again with the card on the encoder. " +
		"If it happens to every job, check the PC's network and 'encoder-bridge doctor'.",
	"invalid_credential": "The cloud sent a credential this bridge refuses: check the reservation in the property system.",
	"invalid_config":     "The bridge's configuration is wrong: run 'encoder-bridge validate --config FILE'.",
	"key_file_error":     "The site key file cannot be used: run 'encoder-bridge keys validate'.",
}

// JobRemedy is what to do about a job that failed with code.
func JobRemedy(code string) string {
	if r, ok := jobRemedies[code]; ok {
		return r
	}
	return RemedyUnknown
}
